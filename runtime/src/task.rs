//! Tasks: what [`spawn`](crate::spawn) allocates, and the wrapper around the
//! user's future.
//!
//! A task is one `async-task` allocation holding a [`Header`] (its metadata),
//! the schedule function (a zero-sized fn item: the scheduler is found through
//! the header), and the future, later its output. Spawning costs that one
//! allocation and one queue push; no lock.
//!
//! The future is wrapped in a [`TaskFuture`] that
//!
//! 1. checks the header's abort flag before every poll and, once it is set,
//!    completes with a cancelled [`JoinError`] instead of polling (async-task
//!    then drops the user's future);
//! 2. polls the user's future under `catch_unwind`, so a panic completes the
//!    task with a [`JoinError`] carrying the payload and never unwinds into a
//!    worker;
//! 3. registers the task with the runtime's registry the first time it returns
//!    `Pending` (see `scheduler::registry`), or completes it as cancelled if
//!    shutdown already closed the registry;
//! 4. removes the task from the registry when its output is decided, or when
//!    it is dropped before that (it was cancelled), and drops the user's
//!    future under `catch_unwind`, so that a panicking
//!    destructor cannot take a worker (or, inside async-task, the process)
//!    down;
//! 5. reports how the task ended to telemetry (the worker that polls it
//!    measures each poll): one relaxed load when telemetry is off.
//!
//! Every task gets a [`TaskId`] at spawn, from a counter of its runtime, so
//! that a deterministic runtime numbers its tasks the same way every run.

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::num::NonZeroU64;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use async_task::WithInfo;

use crate::join::{JoinError, JoinHandle};
use crate::scheduler::registry::Slot;
use crate::scheduler::{self, Shared};
use crate::sync_facade::Arc;
use crate::sync_facade::atomic::AtomicU64;
use crate::sync_facade::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use crate::telemetry::{self, Outcome};

/// A scheduled task, as the queues hold it.
pub(crate) type Runnable = async_task::Runnable<Header>;

/// A task's identity: unique among the tasks of its runtime (never reused),
/// and increasing in the order tasks are spawned by any one thread. Ids come
/// from a counter of the runtime, starting at 1, which workers draw from in
/// blocks; a deterministic runtime, which runs on one thread, therefore gives
/// the same task the same id on every run with the same seed.
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Builder::new_current_thread().build().unwrap();
/// let first = rt.spawn(async {});
/// let second = rt.spawn(async {});
/// assert!(first.id() < second.id());
/// assert_eq!(first.id().to_string(), format!("{}", first.id().as_u64()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(NonZeroU64);

impl TaskId {
    pub(crate) fn new(id: u64) -> TaskId {
        TaskId(NonZeroU64::new(id).unwrap_or(NonZeroU64::MIN))
    }

    /// The id as a number (never zero).
    pub fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Set in [`Header::state`] by an abort.
const ABORTED: u64 = 1 << 63;
/// The bits of [`Header::state`] that hold the telemetry stamp.
const STAMP: u64 = !ABORTED;

/// Per-task state that is ours rather than async-task's.
///
/// Kept to 24 bytes: with async-task's own 32-byte header in front, the
/// schedule function still shares the task's first cache line (a 32-byte
/// header here measurably slowed spawn-heavy work).
pub(crate) struct Header {
    /// The runtime the task belongs to; the schedule function finds it here.
    pub(crate) shared: Arc<Shared>,
    /// The task's id.
    pub(crate) id: TaskId,
    /// [`ABORTED`], set once by an abort and read before every poll; and, in
    /// the [`STAMP`] bits, when the task was queued, in nanoseconds since the
    /// telemetry epoch, if that wake-up was sampled (0 otherwise). The stamp
    /// is written when the task is queued and taken when it is polled (the
    /// queue between them orders the two), always by read-modify-writes that
    /// keep the abort bit. Under loom, which would see every stamp as one
    /// more step to interleave, there are no stamps.
    state: AtomicU64,
}

impl Header {
    /// Stamps the time the task was queued (telemetry, sampled).
    pub(crate) fn stamp(&self, nanos: u64) {
        if cfg!(not(feature = "loom")) {
            let stamp = nanos & STAMP;
            // Infallible: the closure always returns `Some`.
            let _ = self
                .state
                .fetch_update(Relaxed, Relaxed, |state| Some(state & ABORTED | stamp));
        }
    }

    /// Takes the stamp left by [`Header::stamp`], if any (0 if none).
    #[inline]
    pub(crate) fn take_stamp(&self) -> u64 {
        if cfg!(feature = "loom") {
            return 0;
        }
        let stamp = self.state.load(Relaxed) & STAMP;
        if stamp != 0 {
            self.state.fetch_and(ABORTED, Relaxed);
        }
        stamp
    }

    /// Sets the abort flag. Returns true if this call set it.
    pub(crate) fn abort(&self) -> bool {
        self.state.fetch_or(ABORTED, SeqCst) & ABORTED == 0
    }

    /// Whether the task was aborted.
    ///
    /// The abort's wake reaches the poller through async-task's own atomics,
    /// which order the flag store before this load. loom cannot see those
    /// atomics, so under loom the load is a read-modify-write, which always
    /// reads the latest value.
    fn is_aborted(&self) -> bool {
        #[cfg(not(feature = "loom"))]
        {
            self.state.load(Acquire) & ABORTED != 0
        }
        #[cfg(feature = "loom")]
        {
            let _ = Acquire;
            self.state.fetch_or(0, SeqCst) & ABORTED != 0
        }
    }
}

// The size the layout above relies on.
#[cfg(all(not(feature = "loom"), target_pointer_width = "64"))]
const _: () = assert!(std::mem::size_of::<Header>() == 24);

// `AbortHandle` shares `&Header` between threads (see its `Send`/`Sync` impls).
const _: () = {
    const fn assert_sync<T: Sync + Send>() {}
    assert_sync::<Header>();
};

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("id", &self.id)
            .field("aborted", &(self.state.load(Acquire) & ABORTED != 0))
            .finish_non_exhaustive()
    }
}

/// The future inside every task; see the module docs.
///
/// Only ever constructed in place inside a task's allocation (by
/// `build_with`), where async-task keeps it pinned until it is dropped: so
/// every `&mut TaskFuture` points to a pinned value.
///
/// `BLOCKING` marks a `spawn_blocking` task: it runs on the blocking pool,
/// which counts it. A type parameter rather than a field, like the finished
/// mark kept in `slot`, because every byte here is a byte of every task.
struct TaskFuture<'h, F, const BLOCKING: bool> {
    header: &'h Header,
    /// Where the task is registered as idle; `Slot::NONE` if it is not, and
    /// `Slot::FINISHED` once a poll returned `Ready` (a drop before that is a
    /// cancellation).
    slot: Slot,
    /// The user's future.
    ///
    /// # Invariant
    ///
    /// Pinned: never moved out of this place. Dropped exactly once, in place,
    /// by `TaskFuture::drop`.
    future: ManuallyDrop<F>,
}

impl<F: Future, const BLOCKING: bool> Future for TaskFuture<'_, F, BLOCKING> {
    type Output = Result<F::Output, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: nothing below moves `future` (it is only re-pinned in
        // place); the other fields are `Unpin` plain data.
        let this = unsafe { self.get_unchecked_mut() };
        if BLOCKING {
            return this.poll_blocking(cx);
        }
        let (outcome, poll) = this.poll_user(cx);
        if let Some(outcome) = outcome {
            telemetry::finished(&this.header.shared, outcome);
        }
        poll
    }
}

/// What `poll_user` returns: how the task ended, if it did, and the poll.
type Polled<T> = (Option<Outcome>, Poll<Result<T, JoinError>>);

impl<F: Future, const BLOCKING: bool> TaskFuture<'_, F, BLOCKING> {
    /// Steps 1 to 3 of the module docs.
    fn poll_user(&mut self, cx: &mut Context<'_>) -> Polled<F::Output> {
        let cancelled = (
            Some(Outcome::Cancelled),
            Poll::Ready(Err(JoinError::cancelled())),
        );
        if self.header.is_aborted() {
            self.finish();
            return cancelled;
        }
        // SAFETY: every `TaskFuture` is pinned (see the type's docs) and
        // `future` never moves (field invariant).
        let future = unsafe { Pin::new_unchecked(&mut *self.future) };
        let polled = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(output)) => (Some(Outcome::Completed), Poll::Ready(Ok(output))),
            Ok(Poll::Pending) => {
                if self.slot == Slot::NONE {
                    let shared = &self.header.shared;
                    let hint = scheduler::worker::shard_hint(shared);
                    match shared.registry.register(hint, cx.waker()) {
                        Some(slot) => self.slot = slot,
                        // Shutdown began: nobody would ever cancel this task.
                        None => {
                            self.finish();
                            return cancelled;
                        }
                    }
                }
                (None, Poll::Pending)
            }
            Err(payload) => (
                Some(Outcome::Failed),
                Poll::Ready(Err(JoinError::panic(payload))),
            ),
        };
        if polled.1.is_ready() {
            self.finish();
        }
        polled
    }

    /// Marks the task finished (its output decided): leaves the registry now,
    /// as nothing will wait on this task again.
    fn finish(&mut self) {
        self.header.shared.registry.remove(self.slot);
        self.slot = Slot::FINISHED;
    }

    /// A `spawn_blocking` task's only poll, on a blocking-pool thread: the
    /// pool counts it, as failed if it panicked, before the output reaches
    /// the `JoinHandle` (so whoever awaits it finds the job counted).
    fn poll_blocking(&mut self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        let (outcome, poll) = self.poll_user(cx);
        if poll.is_ready() {
            telemetry::report_job_done(outcome == Some(Outcome::Completed));
        }
        poll
    }
}

impl<F, const BLOCKING: bool> Drop for TaskFuture<'_, F, BLOCKING> {
    fn drop(&mut self) {
        if self.slot != Slot::FINISHED && !BLOCKING {
            telemetry::finished(&self.header.shared, Outcome::Cancelled);
        }
        self.header.shared.registry.remove(self.slot);
        let future = &mut self.future;
        // A destructor that panics must not take the worker down (async-task
        // would abort the process): the task's result is already decided.
        // SAFETY: the only drop of `future`, in place (field invariant).
        let dropped = catch_unwind(AssertUnwindSafe(|| unsafe { ManuallyDrop::drop(future) }));
        drop(dropped);
    }
}

/// Spawns `future` on the runtime `shared` and schedules it.
///
/// After shutdown the task is never run: the handle resolves to a cancelled
/// [`JoinError`] at once.
pub(crate) fn spawn<F>(
    shared: &Arc<Shared>,
    future: F,
    site: crate::task_span::SpawnSite,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(not(feature = "tracing"))]
    let _ = site;
    // One look at this thread's worker context serves the id, the count and
    // the queueing.
    scheduler::worker::with_spawner(shared, |spawner| {
        let id = spawner.task_id(true);
        #[cfg(feature = "tracing")]
        let future = crate::task_span::instrument(future, id, site);
        let (runnable, task) = build_with::<_, _, false>(shared, id, future, scheduler::schedule);
        let handle = JoinHandle::new(task, runnable.waker());
        if shared.is_shutdown() {
            // Dropping the runnable cancels the task.
            drop(runnable);
        } else {
            spawner.schedule(runnable);
        }
        handle
    })
}

/// Runs the closure `f` on the runtime's blocking pool, as a task.
///
/// The task is an ordinary task (same header, same [`JoinHandle`], same panic
/// and abort handling) whose schedule function hands `runnable.run()` to the
/// blocking pool instead of a worker queue. Its future runs `f` on its first
/// and only poll, so it never waits and never enters the idle registry. If
/// the pool refuses the job (it shut down), dropping the job drops the
/// runnable, which cancels the task: the handle resolves to a cancelled
/// [`JoinError`].
pub(crate) fn spawn_blocking<F, R>(shared: &Arc<Shared>, f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let mut f = Some(f);
    let future = std::future::poll_fn(move |_| {
        let f = f.take().expect("a blocking task is polled once");
        Poll::Ready(f())
    });
    let id = scheduler::worker::with_spawner(shared, |spawner| spawner.task_id(false));
    let (runnable, task) = build_with::<_, _, true>(shared, id, future, schedule_blocking);
    let handle = JoinHandle::new(task, runnable.waker());
    runnable.schedule();
    handle
}

fn schedule_blocking(runnable: Runnable, _info: async_task::ScheduleInfo) {
    let shared = &runnable.metadata().shared;
    let pool = shared.blocking.clone();
    // A deterministic runtime does not move its clock while the closure is
    // queued or runs. The mark ends after `run` returns, so after the task's
    // output is stored and whoever awaits it is woken.
    let in_flight = crate::scheduler::deterministic::InFlight::start(shared);
    // A refused job is dropped with the runnable inside it: that cancels the task.
    drop(pool.execute(move || {
        runnable.run();
        drop(in_flight);
    }));
}

/// Allocates the task. `schedule` is a function item, not a pointer, so that
/// it takes no room in the task.
fn build_with<F, S, const BLOCKING: bool>(
    shared: &Arc<Shared>,
    id: TaskId,
    future: F,
    schedule: S,
) -> (
    Runnable,
    async_task::Task<Result<F::Output, JoinError>, Header>,
)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Fn(Runnable, async_task::ScheduleInfo) + Send + Sync + 'static,
{
    let header = Header {
        shared: shared.clone(),
        id,
        state: AtomicU64::new(0),
    };
    let builder = async_task::Builder::new().metadata(header);
    // SAFETY: `spawn_unchecked` requires, for what it cannot check itself:
    // - the future is `Send` (`F: Send`, and `&Header` is `Send` because
    //   `Header` is `Sync`), so the runnable may run on any thread;
    // - the future borrows nothing but the metadata, which async-task keeps
    //   alive for as long as the future exists;
    // - the schedule function is a `Send + Sync + 'static` function item;
    // - the output is `Send` (`F::Output: Send`, `JoinError: Send`).
    unsafe {
        builder.spawn_unchecked(
            move |header: &Header| TaskFuture::<F, BLOCKING> {
                header,
                slot: Slot::NONE,
                future: ManuallyDrop::new(future),
            },
            WithInfo(schedule),
        )
    }
}

/// Yields to the scheduler once: the task goes to the back of its worker's
/// queue, so every other task queued there runs before it is polled again.
///
/// Use it in long loops that never await anything else, so that they share
/// their worker. Outside VedaRT it works with any executor (it wakes itself
/// and returns `Pending` once).
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// rt.block_on(async {
///     for _ in 0..3 {
///         vedart::yield_now().await;
///     }
/// });
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // async-task sees a wake while the task runs and reschedules it after
        // this poll as "woken while running", which the scheduler sends to
        // the back of the queue rather than the LIFO slot.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
