//! The deterministic flavour: one thread, a seeded choice of the next task,
//! and a virtual clock.
//!
//! Built by [`Builder::new_deterministic`](crate::Builder::new_deterministic).
//! The algorithm, what it guarantees and what it cannot, is written up in
//! [`README.md`](https://github.com/vedart/vedart/blob/main/runtime/src/scheduler/deterministic/README.md)
//! beside this file. In short, [`run_until`] repeats:
//!
//! 1. Move every task queued from other threads (the injector) into the run
//!    set, in queue order.
//! 2. Let `n` be the run set's size, plus one if the `block_on` future was
//!    woken. If `n > 0`, draw `i` uniformly from `0..n` with the core's
//!    [`Pcg32`] (seeded from the seed alone) and poll candidate `i`: a task,
//!    removed from the run set by `swap_remove`, or the `block_on` future
//!    (the last candidate). Record the poll in the schedule trace. Every
//!    [`EVENT_INTERVAL`] picks, also poll the reactor without blocking.
//! 3. Otherwise every task is idle. Poll the reactor without blocking (fires
//!    the timers due at the virtual now, collects ready I/O); if that woke
//!    nothing and no `spawn_blocking` closure is running, jump the virtual
//!    clock to the earliest timer deadline and go to 1.
//! 4. Otherwise (no timer, or a blocking closure in flight) block in the
//!    reactor until I/O, a wake-up from another thread, or a timer inserted
//!    from another thread.
//!
//! Tasks woken on the runtime's thread go straight into the run set
//! (`Context::schedule_local`), so the order of the run set, and so every
//! pick, depends only on the seed and on what the tasks do.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg32;

use super::Shared;
use super::worker::{Context, EVENT_INTERVAL, MainWaker};
use crate::sync_facade::Arc;
use crate::sync_facade::atomic::Ordering::SeqCst;
use crate::sync_facade::unmodelled::atomic::{AtomicUsize, Ordering::Relaxed};
use crate::sync_facade::unmodelled::{Mutex, lock};
use crate::task_core::{Runnable, TaskId};

/// One poll in a deterministic runtime's schedule; see
/// [`Runtime::schedule_trace`](crate::Runtime::schedule_trace).
///
/// Two runs with the same seed (and the same program, inputs and I/O timing)
/// produce equal traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ScheduleEvent {
    /// The task polled, or `None` for the future passed to `block_on`.
    pub task: Option<TaskId>,
    /// How many candidates (runnable tasks, plus the `block_on` future if it
    /// was woken) the pick was made among.
    pub runnable: usize,
    /// The virtual time of the poll, since the runtime was built.
    pub time: Duration,
}

/// The flavour's state that `Shared` holds: seed, trace, and the counts the
/// idle step and telemetry read.
pub(crate) struct DetShared {
    seed: u64,
    /// The virtual clock when the runtime was built.
    start: Instant,
    /// Every poll, in order (step 2).
    trace: Mutex<Vec<ScheduleEvent>>,
    /// Tasks in the run set (telemetry's queue depth).
    depth: AtomicUsize,
    /// `spawn_blocking` closures queued or running: while any is, the clock
    /// does not jump (step 3), as the closure's result may be what a timed-out
    /// task is waiting for.
    blocking_in_flight: AtomicUsize,
}

impl DetShared {
    /// State for a runtime seeded with `seed` whose clock reads `start`.
    pub(crate) fn new(seed: u64, start: Instant) -> DetShared {
        DetShared {
            seed,
            start,
            trace: Mutex::new(Vec::new()),
            depth: AtomicUsize::new(0),
            blocking_in_flight: AtomicUsize::new(0),
        }
    }

    /// The seed.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// Tasks in the run set.
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Relaxed)
    }

    /// A copy of the trace so far.
    pub(crate) fn trace(&self) -> Vec<ScheduleEvent> {
        lock(&self.trace).clone()
    }

    /// Takes the trace so far, leaving it empty.
    pub(crate) fn take_trace(&self) -> Vec<ScheduleEvent> {
        std::mem::take(&mut *lock(&self.trace))
    }

    fn record(&self, task: Option<TaskId>, runnable: usize, now: Instant) {
        lock(&self.trace).push(ScheduleEvent {
            task,
            runnable,
            time: now.saturating_duration_since(self.start),
        });
    }
}

impl fmt::Debug for DetShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetShared")
            .field("seed", &self.seed)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

/// The flavour's part of the core: the run set and the generator.
pub(crate) struct DetCore {
    runnable: Vec<Runnable>,
    rng: Pcg32,
}

/// What step 2 picked.
enum Pick {
    Task(Runnable),
    BlockOn,
}

impl DetCore {
    /// A core whose generator is seeded from `seed`.
    pub(crate) fn new(seed: u64) -> DetCore {
        DetCore {
            runnable: Vec::new(),
            rng: Pcg32::seed_from_u64(seed),
        }
    }

    /// Adds a woken task to the run set.
    pub(crate) fn push(&mut self, task: Runnable, shared: &Shared) {
        self.runnable.push(task);
        self.publish_depth(shared);
    }

    /// Takes a task out of the run set, to drop it at shutdown.
    pub(crate) fn pop(&mut self) -> Option<Runnable> {
        self.runnable.pop()
    }

    /// Drops every task in the run set.
    pub(crate) fn drain(&mut self) {
        while let Some(task) = self.pop() {
            drop(task);
        }
    }

    fn publish_depth(&self, shared: &Shared) {
        if let Some(det) = &shared.det {
            det.depth.store(self.runnable.len(), Relaxed);
        }
    }

    /// A uniform draw from `0..n` (Lemire's multiply-shift; `n` is small).
    fn below(&mut self, n: usize) -> usize {
        ((u64::from(self.rng.next_u32()) * n as u64) >> 32) as usize
    }

    /// Steps 1 and 2: the next thing to poll, and among how many candidates.
    fn pick(&mut self, shared: &Shared, block_on_woken: bool) -> Option<(Pick, usize)> {
        while let Some(task) = shared.injector.pop() {
            self.runnable.push(task);
        }
        let n = self.runnable.len() + usize::from(block_on_woken);
        if n == 0 {
            return None;
        }
        let index = self.below(n);
        let pick = if index == self.runnable.len() {
            Pick::BlockOn
        } else {
            Pick::Task(self.runnable.swap_remove(index))
        };
        self.publish_depth(shared);
        Some((pick, n))
    }
}

/// The deterministic `block_on` loop (see the module docs): runs tasks and
/// polls `future` until it completes. A panic of `future` is returned, not
/// propagated, so that the caller can put the core back first.
pub(crate) fn run_until<F: Future>(
    cx: &Context,
    mut future: Pin<&mut F>,
    main: &MainWaker,
    waker: &Waker,
) -> thread::Result<F::Output> {
    let shared = &*cx.shared;
    let det = shared
        .det
        .as_ref()
        .expect("a deterministic runtime has deterministic state");
    let mut task_cx = std::task::Context::from_waker(waker);
    let parker = &shared.remotes[cx.index].parker;
    let mut poll_future =
        |future: Pin<&mut F>| catch_unwind(AssertUnwindSafe(|| future.poll(&mut task_cx)));
    loop {
        if shared.is_shutdown() {
            // Shutdown step 2 for this core; then only `future` runs.
            cx.drain();
            if main.woken.swap(false, SeqCst) {
                match poll_future(future.as_mut()) {
                    Ok(Poll::Ready(output)) => return Ok(output),
                    Ok(Poll::Pending) => {}
                    Err(payload) => return Err(payload),
                }
            } else {
                parker.park(shared.driver());
            }
            continue;
        }
        let picked = {
            let mut core = cx.core.borrow_mut();
            core.tick = core.tick.wrapping_add(1);
            let maintenance = core.tick % EVENT_INTERVAL == 0;
            let woken = main.woken.load(SeqCst);
            let picked = core
                .det
                .as_mut()
                .expect("a deterministic core has a run set")
                .pick(shared, woken);
            drop(core);
            if maintenance {
                cx.maintenance();
            }
            picked
        };
        match picked {
            Some((Pick::Task(task), runnable)) => {
                det.record(Some(task.metadata().id), runnable, shared.reactor.now());
                cx.run_one(task);
            }
            Some((Pick::BlockOn, runnable)) => {
                det.record(None, runnable, shared.reactor.now());
                main.woken.store(false, SeqCst);
                match poll_future(future.as_mut()) {
                    Ok(Poll::Ready(output)) => return Ok(output),
                    Ok(Poll::Pending) => {}
                    Err(payload) => return Err(payload),
                }
            }
            None => idle(cx, det, main),
        }
    }
}

/// Steps 3 and 4: every task is idle.
fn idle(cx: &Context, det: &DetShared, main: &MainWaker) {
    let shared = &*cx.shared;
    // Timers due at the virtual now, and I/O that is ready, wake tasks.
    cx.maintenance();
    let has_work = {
        let core = cx.core.borrow();
        core.det
            .as_ref()
            .is_some_and(|det| !det.runnable.is_empty())
            || !shared.injector.is_empty()
            || main.woken.load(SeqCst)
    };
    if has_work || shared.is_shutdown() {
        return;
    }
    if det.blocking_in_flight.load(SeqCst) == 0 {
        if let Some(deadline) = shared.reactor.next_timer_deadline() {
            // Nothing can happen before the next timer: let time pass.
            shared.reactor.advance_clock_to(deadline);
            return;
        }
    }
    // Only I/O or another thread can wake a task now. Either leaves the
    // parker notified or interrupts the reactor turn it blocks in.
    cx.count_park();
    cx.set_parking(true);
    shared.remotes[cx.index].parker.park(shared.driver());
    cx.set_parking(false);
}

/// Marks a `spawn_blocking` closure as in flight on a deterministic runtime,
/// until dropped (step 3 does not jump the clock meanwhile).
pub(crate) struct InFlight {
    shared: Arc<Shared>,
}

impl InFlight {
    /// Starts one, on a deterministic runtime; `None` on the others.
    pub(crate) fn start(shared: &Arc<Shared>) -> Option<InFlight> {
        let det = shared.det.as_ref()?;
        det.blocking_in_flight.fetch_add(1, SeqCst);
        Some(InFlight {
            shared: shared.clone(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(det) = &self.shared.det else {
            return;
        };
        if det.blocking_in_flight.fetch_sub(1, SeqCst) == 1 {
            // The runtime's thread may be blocked with timers pending, waiting
            // for exactly this: let it re-evaluate.
            self.shared.remotes[0].parker.unpark(self.shared.driver());
        }
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}
