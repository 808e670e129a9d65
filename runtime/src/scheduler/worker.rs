//! The worker loop, the current-thread loop, and `block_on`.
//!
//! # A worker's loop (multi-thread flavour)
//!
//! Each worker thread owns a [`Core`]: a LIFO slot, a bounded local queue, a
//! PCG generator and a tick counter. It repeats:
//!
//! 1. Every [`EVENT_INTERVAL`] ticks: poll the reactor without blocking (if no
//!    other worker is blocked in it), so I/O and timers progress even while
//!    every worker is busy; notice shutdown.
//! 2. Take a task: every [`GLOBAL_QUEUE_INTERVAL`] ticks from the injector
//!    first (so a worker whose tasks keep waking each other cannot starve the
//!    injector), otherwise the LIFO slot, then the local queue, then a batch
//!    from the injector.
//! 3. Nothing local: become a searcher (see `idle`) and steal half of a random
//!    victim's queue, then try the injector.
//! 4. Run the task; then run whatever it put in the LIFO slot, at most
//!    [`MAX_LIFO_POLLS_PER_TICK`] times in a row (two tasks that wake each
//!    other would otherwise monopolize the worker).
//! 5. Nothing anywhere: park (see `park`), after the idle bookkeeping of
//!    `idle`, rule 5. Tasks the reactor wakes while this worker drives it land
//!    in this worker's queue; if there is more than one, it wakes another
//!    worker to share them.
//! 6. On shutdown: drop every task in the LIFO slot and the local queue, exit.
//!
//! # The current-thread flavour
//!
//! The runtime's single core lives in `Shared::core_slot` while no `block_on`
//! runs. `block_on` takes it and runs the same steps 1, 2 and 4 on the calling
//! thread, polling its own future whenever that future's waker fires, and
//! parks in the reactor itself when there is nothing to do. A second,
//! concurrent `block_on` polls only its own future until the core is free.
//!
//! The deterministic flavour runs the same `block_on` hand-off of the core,
//! with its own loop (`deterministic::run_until`): a seeded pick among every
//! runnable task, and a virtual clock instead of a blocking idle step.
//!
//! # Where a woken task goes
//!
//! [`try_schedule_local`] is the fast path of `scheduler::schedule`: a task
//! woken on one of its own runtime's worker threads goes to that worker's LIFO
//! slot, or to the back of its queue if it was woken while running (a yield),
//! if the LIFO chain is capped, or if the reactor woke it (readiness and
//! timers then run in the order the reactor reported them: timers by
//! deadline). Pushing to the queue wakes another worker (it might steal),
//! except while the worker is parking: it will run those tasks itself in a
//! moment, and wakes a helper afterwards if it has more than one.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::ptr;
use std::sync::Arc as StdArc;
use std::task::{Poll, Wake, Waker};
use std::thread::{self, Thread};

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg32;

use super::deterministic::{self, DetCore};
use super::park::{Driver, DriverTurn};
use super::queue::{LOCAL_QUEUE_CAPACITY, Local};
use super::{Flavor, Shared};
use crate::sync_facade::atomic::AtomicBool;
use crate::sync_facade::atomic::Ordering::SeqCst;
use crate::sync_facade::{Arc, lock};
use crate::task_core::{Runnable, TaskId};
use crate::telemetry::{self, Event, PollProbe};

/// Ticks between non-blocking reactor polls (step 1). Prime, as in tokio, so
/// that it does not beat with [`GLOBAL_QUEUE_INTERVAL`].
pub(crate) const EVENT_INTERVAL: u32 = 61;

/// Ticks between injector-first picks (step 2).
pub(crate) const GLOBAL_QUEUE_INTERVAL: u32 = 61;

/// Consecutive LIFO-slot polls before the slot is bypassed (step 4).
pub(crate) const MAX_LIFO_POLLS_PER_TICK: usize = 3;

/// A worker's private scheduling state.
pub(crate) struct Core {
    /// The task most recently woken by this worker's running task; runs next
    /// and cannot be stolen.
    lifo: Option<Runnable>,
    /// False after [`MAX_LIFO_POLLS_PER_TICK`] LIFO polls in a row, until the
    /// chain ends: wakes then go to the back of the queue.
    lifo_enabled: bool,
    /// The owner's end of this worker's local queue.
    queue: Local<Runnable>,
    /// Picks steal victims; seeded per worker so workers spread out.
    rng: Pcg32,
    /// Loop iterations, for the periodic checks of steps 1 and 2.
    pub(super) tick: u32,
    /// Whether this worker counts as searching in `Idle`.
    is_searching: bool,
    /// Set once the worker has seen the shutdown flag.
    is_shutdown: bool,
    /// True while the worker is inside `park`: pushes then skip waking others.
    parking: bool,
    /// True while this thread turns the reactor: tasks it wakes then go to the
    /// back of the queue, in the order the reactor woke them (timers by
    /// deadline), rather than the LIFO slot, which is for a running task's
    /// hand-off to the task it woke.
    in_driver: bool,
    /// The deterministic flavour's run set and generator (`None` otherwise):
    /// every task woken on this core goes there instead of the queues.
    pub(crate) det: Option<DetCore>,
}

impl Core {
    /// A core for worker `index` owning `queue`.
    pub(crate) fn new(index: usize, queue: Local<Runnable>) -> Core {
        Core {
            lifo: None,
            lifo_enabled: true,
            queue,
            rng: Pcg32::seed_from_u64(0x5EED_0000 ^ index as u64),
            tick: 0,
            is_searching: false,
            is_shutdown: false,
            parking: false,
            in_driver: false,
            det: None,
        }
    }

    fn has_tasks(&self) -> bool {
        self.lifo.is_some() || self.queue.has_tasks()
    }

    fn next_local_task(&mut self) -> Option<Runnable> {
        self.lifo.take().or_else(|| self.queue.pop())
    }

    /// Step 2.
    fn next_task(&mut self, shared: &Shared) -> Option<Runnable> {
        if self.tick % GLOBAL_QUEUE_INTERVAL == 0 {
            return shared.injector.pop().or_else(|| self.next_local_task());
        }
        if let Some(task) = self.next_local_task() {
            return Some(task);
        }
        if shared.injector.is_empty() {
            return None;
        }
        // Take a fair share of the injector, into the first half of the local
        // queue (so that it cannot overflow straight back).
        let room = self.queue.remaining_slots().min(LOCAL_QUEUE_CAPACITY / 2);
        let share = shared.injector.len() / shared.remotes.len() + 1;
        let n = share.min(room).max(1);
        let first = shared.injector.pop()?;
        self.queue
            .push_back_batch((1..n).map_while(|_| shared.injector.pop()));
        Some(first)
    }

    /// Step 3.
    fn steal_work(&mut self, shared: &Shared, index: usize) -> Option<Runnable> {
        // Even a lone worker becomes a searcher: parking as the last searcher
        // is what makes it look at the injector once more (idle, rule 5).
        if !self.transition_to_searching(shared) {
            return None;
        }
        let workers = shared.remotes.len();
        let start = self.rng.next_u32() as usize % workers;
        for offset in 0..workers {
            let victim = (start + offset) % workers;
            if victim == index {
                continue;
            }
            if let Some(task) = shared.remotes[victim].steal.steal_into(&mut self.queue) {
                if telemetry::is_enabled() {
                    shared.stats.worker(index).add(Event::Steals);
                }
                return Some(task);
            }
        }
        shared.injector.pop()
    }

    fn transition_to_searching(&mut self, shared: &Shared) -> bool {
        if !self.is_searching {
            self.is_searching = shared.idle.transition_worker_to_searching();
        }
        self.is_searching
    }

    fn transition_from_searching(&mut self, shared: &Shared) {
        if !self.is_searching {
            return;
        }
        self.is_searching = false;
        if shared.idle.transition_worker_from_searching() {
            // The last searcher found work: wake another to keep looking.
            shared.notify_parked_local();
        }
    }

    /// After a park: more than one task here and nobody searching for it.
    fn should_notify_others(&self) -> bool {
        !self.is_searching && usize::from(self.lifo.is_some()) + self.queue.len() > 1
    }

    /// Drops (cancels) every task this core holds.
    pub(crate) fn drain(&mut self) {
        while let Some(task) = self.next_local_task() {
            drop(task);
        }
        if let Some(det) = &mut self.det {
            det.drain();
        }
    }

    /// Takes one task held by this core, for dropping it (the deterministic
    /// run set included).
    fn next_to_drain(&mut self) -> Option<Runnable> {
        self.next_local_task()
            .or_else(|| self.det.as_mut().and_then(DetCore::pop))
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("lifo", &self.lifo.is_some())
            .field("queue", &self.queue)
            .field("tick", &self.tick)
            .field("is_searching", &self.is_searching)
            .finish_non_exhaustive()
    }
}

/// A thread that currently runs tasks with a core: a worker thread, or a
/// current-thread `block_on`.
pub(crate) struct Context {
    pub(super) shared: Arc<Shared>,
    pub(super) index: usize,
    /// Borrowed only for short scheduling steps, never while a task runs, so
    /// that tasks can schedule onto it.
    pub(super) core: RefCell<Core>,
    /// Polls this core has run (telemetry, while enabled): kept here, where
    /// counting costs nothing but a plain increment, and published to the
    /// worker's stats block by `publish_polls`.
    polls: Cell<u64>,
    /// Tasks queued on this core (telemetry), published with `polls`.
    schedules: Cell<u64>,
    /// Task ids reserved for tasks spawned on this thread: `next..end`.
    /// Taking them in blocks keeps the runtime's id counter off the spawn
    /// path's cache lines.
    ids: Cell<(u64, u64)>,
}

/// Task ids a context reserves at once.
const ID_BLOCK: u64 = 256;

/// Who is spawning a task on a runtime: one of its workers, or another
/// thread. Found once per spawn, for the task's id, the telemetry count and
/// where the task is queued.
pub(crate) enum Spawner<'a> {
    /// A worker (or the current-thread `block_on`) of the runtime.
    Worker(&'a Context),
    /// Any other thread.
    Remote(&'a Shared),
}

/// Runs `f` with the [`Spawner`] this thread is for `shared`.
#[inline]
pub(crate) fn with_spawner<R>(shared: &Shared, f: impl FnOnce(Spawner<'_>) -> R) -> R {
    with_current(|cx| match cx {
        Some(cx) if ptr::eq(&*cx.shared, shared) => f(Spawner::Worker(cx)),
        _ => f(Spawner::Remote(shared)),
    })
}

impl Spawner<'_> {
    /// The id of the task being spawned; counts the spawn for telemetry if
    /// `count` (an async task, not a blocking closure).
    #[inline]
    pub(crate) fn task_id(&self, count: bool) -> TaskId {
        match self {
            Spawner::Worker(cx) => {
                if count {
                    telemetry::spawned(Some(cx.shared.stats.worker(cx.index)));
                }
                cx.next_task_id()
            }
            Spawner::Remote(shared) => {
                if count {
                    telemetry::spawned(None);
                }
                remote_task_id(shared)
            }
        }
    }

    /// Queues a newly spawned task: what `scheduler::schedule` would do, with
    /// the worker already at hand.
    #[inline]
    pub(crate) fn schedule(&self, task: Runnable) {
        match self {
            Spawner::Worker(cx) => match cx.core.try_borrow_mut() {
                Ok(mut core) => cx.schedule_local(&mut core, task, false),
                // The core is borrowed only by scheduler bugs (see
                // `try_schedule_local`): the injector is always correct.
                Err(_) => cx.shared.schedule_remote(task),
            },
            Spawner::Remote(shared) => shared.schedule_remote(task),
        }
    }
}

/// The id of a task spawned on `shared` by a thread that is not one of its
/// workers: from a block this thread reserved from `shared`, like a worker's.
fn remote_task_id(shared: &Shared) -> TaskId {
    std::thread_local! {
        /// `(serial of the runtime, next, end)`: the serial, unique in the
        /// process, tells a block of this runtime from one of a runtime that
        /// was dropped and whose memory was reused.
        static BLOCK: Cell<(u64, u64, u64)> = const { Cell::new((0, 0, 0)) };
    }
    BLOCK.with(|block| {
        let (serial, mut next, mut end) = block.get();
        if serial != shared.serial || next == end {
            next = shared.reserve_task_ids(ID_BLOCK).as_u64();
            end = next + ID_BLOCK;
        }
        block.set((shared.serial, next + 1, end));
        TaskId::new(next)
    })
}

#[cfg(not(feature = "loom"))]
crate::sync_facade::thread_local! {
    /// The `Context` this thread runs, or null.
    static CURRENT: Cell<*const Context> = const { Cell::new(ptr::null()) };
}
#[cfg(feature = "loom")]
crate::sync_facade::thread_local! {
    /// The `Context` this thread runs, or null.
    static CURRENT: Cell<*const Context> = Cell::new(ptr::null());
}

/// Makes a `Context` current on this thread until dropped.
struct ContextGuard {
    previous: *const Context,
}

impl ContextGuard {
    fn enter(cx: &Context) -> ContextGuard {
        let previous = CURRENT.with(|current| current.replace(cx));
        ContextGuard { previous }
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
}

/// Runs `f` with this thread's current `Context`, if any.
fn with_current<R>(f: impl FnOnce(Option<&Context>) -> R) -> R {
    CURRENT.with(|current| {
        // SAFETY: a non-null pointer was set by a `ContextGuard` that is still
        // alive (guards restore the previous value when dropped, in LIFO order),
        // and each guard borrows a `Context` that outlives it.
        f(unsafe { current.get().as_ref() })
    })
}

/// The fast path of `scheduler::schedule`: queues `task` on this thread's
/// core if this thread runs one of `task`'s runtime's cores. Hands the task
/// back otherwise.
pub(crate) fn try_schedule_local(task: Runnable, is_yield: bool) -> Result<(), Runnable> {
    with_current(|cx| {
        let Some(cx) = cx else {
            return Err(task);
        };
        if !ptr::eq(&*cx.shared, &*task.metadata().shared) {
            return Err(task);
        }
        let Ok(mut core) = cx.core.try_borrow_mut() else {
            // Only reachable if a task is dropped while the core is borrowed
            // (a scheduler bug); the injector is always a correct place.
            return Err(task);
        };
        cx.schedule_local(&mut core, task, is_yield);
        Ok(())
    })
}

/// Which registry shard a task registering on this thread should use.
pub(crate) fn shard_hint(shared: &Shared) -> usize {
    #[cfg(not(feature = "loom"))]
    crate::sync_facade::thread_local! {
        static HINT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    #[cfg(feature = "loom")]
    crate::sync_facade::thread_local! {
        static HINT: Cell<usize> = Cell::new(usize::MAX);
    }
    let on_worker = with_current(|cx| match cx {
        Some(cx) if ptr::eq(&*cx.shared, shared) => Some(cx.index),
        _ => None,
    });
    on_worker.unwrap_or_else(|| {
        HINT.with(|hint| {
            if hint.get() == usize::MAX {
                // Any per-thread value spreads threads over the shards.
                hint.set(hint as *const Cell<usize> as usize >> 6);
            }
            hint.get()
        })
    })
}

/// Whether this thread is one of `shared`'s workers (or its current-thread
/// `block_on`).
pub(crate) fn is_worker_of(shared: &Shared) -> bool {
    current_index(shared).is_some()
}

/// The index of the worker of `shared` this thread runs, if it runs one.
#[inline]
pub(crate) fn current_index(shared: &Shared) -> Option<usize> {
    with_current(|cx| match cx {
        Some(cx) if ptr::eq(&*cx.shared, shared) => Some(cx.index),
        _ => None,
    })
}

/// Panics if this thread runs VedaRT tasks: blocking it would stall them.
pub(crate) fn assert_not_in_worker() {
    if with_current(|cx| cx.is_some()) {
        let name = thread::current()
            .name()
            .map_or_else(|| "an unnamed thread".to_owned(), str::to_owned);
        panic!(
            "vedart: `block_on` called on {name}, which is running VedaRT tasks. \
             Blocking this thread would stall every task queued on it and can deadlock \
             the runtime. Inside async code, `.await` the future instead, or pass it to \
             `vedart::spawn` and await the JoinHandle."
        );
    }
}

impl Context {
    /// The context of worker `index` of `shared`, running `core`.
    pub(super) fn new(shared: Arc<Shared>, index: usize, core: Core) -> Context {
        // Resume the counts a previous context of this core published.
        let block = shared.stats.worker(index);
        let polls = Cell::new(block.get(Event::Polls));
        let schedules = Cell::new(block.get(Event::Schedules));
        Context {
            shared,
            index,
            core: RefCell::new(core),
            polls,
            schedules,
            ids: Cell::new((0, 0)),
        }
    }

    /// The next id of this context's block, reserving a block when empty.
    fn next_task_id(&self) -> TaskId {
        let (mut next, mut end) = self.ids.get();
        if next == end {
            next = self.shared.reserve_task_ids(ID_BLOCK).as_u64();
            end = next + ID_BLOCK;
        }
        self.ids.set((next + 1, end));
        TaskId::new(next)
    }

    /// Publishes the poll and schedule counts to this worker's stats block.
    pub(super) fn publish_polls(&self) {
        let block = self.shared.stats.worker(self.index);
        block.set(Event::Polls, self.polls.get());
        block.set(Event::Schedules, self.schedules.get());
    }

    /// Queues a task woken on this core's thread (see the module docs).
    fn schedule_local(&self, core: &mut Core, task: Runnable, is_yield: bool) {
        telemetry::scheduled_local(task.metadata(), &self.schedules);
        if let Some(det) = &mut core.det {
            det.push(task, &self.shared);
            return;
        }
        let pushed_to_queue = if is_yield || !core.lifo_enabled || core.in_driver {
            core.queue
                .push_back_or_overflow(task, &self.shared.injector);
            true
        } else {
            match core.lifo.replace(task) {
                Some(previous) => {
                    core.queue
                        .push_back_or_overflow(previous, &self.shared.injector);
                    true
                }
                None => false,
            }
        };
        if pushed_to_queue && !core.parking {
            self.shared.notify_parked_local();
        }
    }

    /// The multi-thread worker loop, until shutdown.
    fn run(&self) {
        while let Some(task) = self.next_or_park() {
            self.run_task(task);
        }
    }

    /// Steps 1, 2, 3 and 5: the next task to run, or `None` on shutdown.
    fn next_or_park(&self) -> Option<Runnable> {
        loop {
            let mut core = self.core.borrow_mut();
            if core.is_shutdown {
                return None;
            }
            core.tick = core.tick.wrapping_add(1);
            if core.tick % EVENT_INTERVAL == 0 {
                drop(core);
                self.maintenance();
                core = self.core.borrow_mut();
                if core.is_shutdown {
                    return None;
                }
            }
            if let Some(task) = core.next_task(&self.shared) {
                return Some(task);
            }
            if let Some(task) = core.steal_work(&self.shared, self.index) {
                return Some(task);
            }
            drop(core);
            self.park();
        }
    }

    /// Step 1.
    pub(super) fn maintenance(&self) {
        self.publish_polls();
        if let Some(mut driver) = self.shared.driver().try_lock() {
            self.core.borrow_mut().in_driver = true;
            driver.poll();
            self.core.borrow_mut().in_driver = false;
        }
        if self.shared.is_shutdown() {
            self.core.borrow_mut().is_shutdown = true;
        }
    }

    /// Polls `task` once, counted and (if sampled) measured by telemetry.
    #[inline]
    pub(super) fn run_one(&self, task: Runnable) {
        let status = telemetry::status();
        if !status.is_active() {
            task.run();
            return;
        }
        let polls = self.polls.get();
        if status.is_enabled() {
            self.polls.set(polls + 1);
        }
        let block = || self.shared.stats.worker(self.index);
        match PollProbe::start(&task, status, polls, block) {
            None => {
                task.run();
            }
            Some(probe) => {
                task.run();
                probe.finish();
            }
        }
    }

    /// Step 4.
    fn run_task(&self, task: Runnable) {
        self.core
            .borrow_mut()
            .transition_from_searching(&self.shared);
        self.run_one(task);
        let mut lifo_polls = 0;
        loop {
            let next = {
                let mut core = self.core.borrow_mut();
                match core.lifo.take() {
                    Some(task) => {
                        lifo_polls += 1;
                        if lifo_polls >= MAX_LIFO_POLLS_PER_TICK {
                            core.lifo_enabled = false;
                        }
                        task
                    }
                    None => {
                        core.lifo_enabled = true;
                        return;
                    }
                }
            };
            self.run_one(next);
        }
    }

    /// Step 5, multi-thread flavour.
    fn park(&self) {
        let parker = &self.shared.remotes[self.index].parker;
        if self.transition_to_parked() {
            self.count_park();
            loop {
                self.set_parking(true);
                parker.park(self.shared.driver());
                self.set_parking(false);
                let mut core = self.core.borrow_mut();
                if self.shared.is_shutdown() {
                    core.is_shutdown = true;
                    return;
                }
                if self.transition_from_parked(&mut core) {
                    break;
                }
            }
        }
        let core = self.core.borrow();
        if core.should_notify_others() {
            self.shared.notify_parked_local();
        }
    }

    /// Counts a park for telemetry, and publishes the poll count.
    pub(super) fn count_park(&self) {
        if telemetry::is_enabled() {
            self.shared.stats.worker(self.index).add(Event::Parks);
        }
        self.publish_polls();
    }

    /// Enters or leaves `park`, during which this thread may turn the reactor.
    pub(super) fn set_parking(&self, parking: bool) {
        let mut core = self.core.borrow_mut();
        core.parking = parking;
        core.in_driver = parking;
    }

    /// Registers this worker as sleeping; false if it has work after all.
    fn transition_to_parked(&self) -> bool {
        let mut core = self.core.borrow_mut();
        if core.has_tasks() {
            return false;
        }
        let last_searcher = self
            .shared
            .idle
            .transition_worker_to_parked(self.index, core.is_searching);
        core.is_searching = false;
        drop(core);
        if last_searcher {
            // idle, rule 5: a push that raced with our last scan saw us
            // searching and woke nobody.
            self.shared.notify_if_work_pending();
        }
        true
    }

    /// After a wake-up: whether to leave `park`.
    fn transition_from_parked(&self, core: &mut Core) -> bool {
        if core.has_tasks() {
            // Woken by the reactor with tasks of our own (or notified anyway):
            // not searching unless someone notified us on purpose.
            core.is_searching = !self.shared.idle.unpark_worker_by_id(self.index);
            return true;
        }
        if self.shared.idle.is_parked(self.index) {
            // A spurious wake-up, or one for I/O that woke nothing.
            return false;
        }
        // Notified: whoever did counted us as searching.
        core.is_searching = true;
        true
    }

    /// Step 6: drops every task still held by this core.
    pub(super) fn drain(&self) {
        loop {
            let task = self.core.borrow_mut().next_to_drain();
            match task {
                // Dropped with the core released: the task's destructor may
                // wake (schedule) other tasks onto this core.
                Some(task) => drop(task),
                None => break,
            }
        }
    }

    /// The current-thread loop: runs tasks and polls `future` until it
    /// completes. A panic of `future` is returned, not propagated, so that the
    /// caller can put the core back first.
    fn run_until<F: Future>(
        &self,
        mut future: Pin<&mut F>,
        main: &MainWaker,
        waker: &Waker,
    ) -> thread::Result<F::Output> {
        let mut task_cx = std::task::Context::from_waker(waker);
        let parker = &self.shared.remotes[self.index].parker;
        loop {
            if main.woken.swap(false, SeqCst) {
                match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut task_cx))) {
                    Ok(Poll::Ready(output)) => return Ok(output),
                    Ok(Poll::Pending) => {}
                    Err(payload) => return Err(payload),
                }
            }
            if self.shared.is_shutdown() {
                // Shutdown step 2 for this core; then only `future` runs.
                self.drain();
                if !main.woken.load(SeqCst) {
                    parker.park(self.shared.driver());
                }
                continue;
            }
            let mut ran = 0;
            while ran < EVENT_INTERVAL {
                let task = {
                    let mut core = self.core.borrow_mut();
                    core.tick = core.tick.wrapping_add(1);
                    let maintenance = core.tick % EVENT_INTERVAL == 0;
                    drop(core);
                    if maintenance {
                        self.maintenance();
                    }
                    self.core.borrow_mut().next_task(&self.shared)
                };
                match task {
                    Some(task) => {
                        self.run_task(task);
                        ran += 1;
                    }
                    None => break,
                }
                if main.woken.load(SeqCst) {
                    break;
                }
            }
            if ran == 0 && !main.woken.load(SeqCst) {
                // Idle. A push from another thread, or a wake of `future`,
                // after our last look leaves the parker notified, so this
                // returns at once in that case.
                self.count_park();
                self.set_parking(true);
                parker.park(self.shared.driver());
                self.set_parking(false);
            }
        }
    }
}

/// Body of a multi-thread worker thread: runs tasks until shutdown.
pub(crate) fn run_worker(shared: Arc<Shared>, index: usize, core: Core) {
    // Under loom the reactor crate's thread-local (std's, shared by loom's
    // threads) must stay untouched; the models spawn through handles.
    #[cfg(not(feature = "loom"))]
    let _handle = crate::runtime::Handle::from_shared(shared.clone()).enter();
    let cx = Context::new(shared, index, core);
    let _guard = ContextGuard::enter(&cx);
    cx.run();
    cx.publish_polls();
    cx.drain();
}

/// Wakes a current-thread `block_on`, wherever it waits.
pub(crate) struct MainWaker {
    /// Set by every wake; `block_on` polls its future when it finds it set.
    pub(crate) woken: AtomicBool,
    /// The `block_on` thread, for when it waits for the core.
    thread: Thread,
    /// The runtime, for when the thread parks on the core's parker.
    shared: Arc<Shared>,
}

impl Wake for MainWaker {
    fn wake(self: StdArc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &StdArc<Self>) {
        self.woken.store(true, SeqCst);
        self.shared.remotes[0].parker.unpark(self.shared.driver());
        self.thread.unpark();
    }
}

/// `block_on` for the current-thread and deterministic flavours; see the
/// module docs.
pub(crate) fn block_on_current_thread<F: Future>(shared: &Arc<Shared>, future: F) -> F::Output {
    debug_assert!(shared.flavor.is_single_threaded());
    let main = StdArc::new(MainWaker {
        woken: AtomicBool::new(true),
        thread: thread::current(),
        shared: shared.clone(),
    });
    let waker = Waker::from(main.clone());
    let mut future = pin!(future);
    loop {
        let core = {
            let mut slot = lock(&shared.core_slot);
            let core = slot.core.take();
            if core.is_none() && !slot.waiters.iter().any(|w| w.will_wake(&waker)) {
                slot.waiters.push(waker.clone());
            }
            core
        };
        if let Some(core) = core {
            let cx = Context::new(shared.clone(), 0, core);
            let result = {
                let _guard = ContextGuard::enter(&cx);
                if shared.flavor == Flavor::Deterministic {
                    deterministic::run_until(&cx, future.as_mut(), &main, &waker)
                } else {
                    cx.run_until(future.as_mut(), &main, &waker)
                }
            };
            cx.publish_polls();
            let core = cx.core.into_inner();
            let waiters = {
                let mut slot = lock(&shared.core_slot);
                slot.core = Some(core);
                std::mem::take(&mut slot.waiters)
            };
            for waiter in waiters {
                waiter.wake();
            }
            return match result {
                Ok(output) => output,
                Err(payload) => resume_unwind(payload),
            };
        }
        // Another thread runs the core: poll only our future until it is free.
        if main.woken.swap(false, SeqCst) {
            let mut cx = std::task::Context::from_waker(&waker);
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        thread::park();
    }
}

/// `block_on` on a thread that runs no core (multi-thread flavour, or any
/// foreign thread): polls `future`, sleeping in between.
///
/// Before it sleeps, the thread spins for up to [`BLOCK_ON_SPIN`] while a core
/// is left over by the runtime's awake workers: an answer that comes within
/// that time (a round trip to a warm child process, a reply over a local
/// socket) then spares it the wake-up of an idle core, which on a quiet
/// machine costs several times the round trip itself. It stops spinning as
/// soon as the workers awake would need its core.
pub(crate) fn block_on_thread<F: Future>(shared: &Shared, future: F) -> F::Output {
    use std::sync::atomic::{AtomicBool as StdAtomicBool, Ordering};
    use std::time::Instant;

    struct ThreadWaker {
        thread: Thread,
        woken: StdAtomicBool,
    }
    impl Wake for ThreadWaker {
        fn wake(self: StdArc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &StdArc<Self>) {
            self.woken.store(true, Ordering::Release);
            self.thread.unpark();
        }
    }
    thread_local! {
        static WAKER: StdArc<ThreadWaker> = StdArc::new(ThreadWaker {
            thread: thread::current(),
            woken: StdAtomicBool::new(false),
        });
    }
    let cores = available_cores();
    let core_to_spare = || shared.idle.state().num_unparked() < cores;
    let mut future = pin!(future);
    WAKER.with(|waiter| {
        let waker = Waker::from(waiter.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            waiter.woken.store(false, Ordering::Relaxed);
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            let spin_until = Instant::now() + BLOCK_ON_SPIN;
            'spin: while core_to_spare() && Instant::now() < spin_until {
                for _ in 0..64 {
                    if waiter.woken.load(Ordering::Acquire) {
                        break 'spin;
                    }
                    std::hint::spin_loop();
                }
            }
            if !waiter.woken.load(Ordering::Acquire) {
                // A wake-up that came before this park makes it return at once.
                thread::park();
            }
        }
    })
}

/// How long `block_on` on a foreign thread spins before it sleeps.
const BLOCK_ON_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The cores this process may run on (1 if unknown), read once.
fn available_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map_or(1, usize::from))
}
