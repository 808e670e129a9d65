//! The futures and handles callers hold: [`Call`], [`CancelHandle`],
//! [`Context`] and the broadcast future.
//!
//! # A call's life
//!
//! 1. *Dispatch*: pick the accepting child with the fewest calls in flight
//!    (or a given child, for a targeted call), register the call there under a
//!    fresh request id, and write its frame (see `conn`). With no child ready
//!    (all being started) the call waits in the pool's waiter list.
//! 2. *Waiting*: the child's driver completes the call's [`CallCell`] with the
//!    answer or an error, or asks it to go back to 1 (`Retry`) because its
//!    child ended without answering it and running it again is allowed: the
//!    child had not acknowledged starting it (a `Started` frame), or the call
//!    still has retries left (see `conn` for who decides what).
//! 3. Dropping the future (or [`CancelHandle::cancel`]) during 2 withdraws the
//!    frame if it was never written; if the child acknowledged starting it,
//!    terminates the child, which the pool replaces; otherwise retires the child
//!    and terminates it only when it acknowledges the abandoned request.
//! 4. A call with a timeout arms a timer on its first poll; when it fires
//!    before the call resolved, the call gives up as in 3 and resolves to
//!    `TimedOut` (during 1 it just leaves the waiter list).

use crate::sync::unmodelled::Arc;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use futures::FutureExt;
use vedart_reactor::Sleep;

use super::conn::{Conn, Registered};
use super::error::ProcessError;
use super::pool::{Dispatch, PoolShared};
use crate::sync::atomic::Ordering;
use crate::sync::{Mutex, lock};

/// How a call ended, as the driver reports it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Final: the answer or the error.
    Done(Result<Vec<u8>, ProcessError>),
    /// The child was terminated for another call's sake: dispatch again.
    Retry,
}

/// The rendezvous between a call future, its cancel handles and a driver.
pub(crate) struct CallCell {
    /// Set for calls aimed at one given child (broadcast): they never retry.
    targeted: bool,
    inner: Mutex<CellInner>,
}

struct CellInner {
    /// How many more times the call may be sent again after an attempt that
    /// had started was lost (see [`Call::retries`]).
    retries: u32,
    outcome: Option<Outcome>,
    waker: Option<Waker>,
    cancelled: bool,
    /// The child and request id while the call is in flight.
    running: Option<(Arc<Conn>, u64)>,
}

impl fmt::Debug for CallCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallCell")
            .field("targeted", &self.targeted)
            .finish_non_exhaustive()
    }
}

impl CallCell {
    fn new(targeted: bool, retries: u32) -> Arc<CallCell> {
        Arc::new(CallCell {
            targeted,
            inner: Mutex::new(CellInner {
                retries,
                outcome: None,
                waker: None,
                cancelled: false,
                running: None,
            }),
        })
    }

    pub(crate) fn is_targeted(&self) -> bool {
        self.targeted
    }

    /// Spends one retry, if the call has one left.
    pub(crate) fn take_retry(&self) -> bool {
        let mut inner = lock(&self.inner);
        if inner.retries == 0 {
            return false;
        }
        inner.retries -= 1;
        true
    }

    /// Delivers the outcome (the first one wins) and wakes the call.
    pub(crate) fn complete(&self, outcome: Outcome) {
        let waker = {
            let mut inner = lock(&self.inner);
            if inner.outcome.is_some() {
                return;
            }
            inner.outcome = Some(outcome);
            inner.running = None;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A call to the pool: resolves to the child's answer. Created by
/// [`ProcessPool::call`](super::ProcessPool::call).
///
/// Dropping it before it resolves cancels the call: a frame still queued is
/// withdrawn; once the child has started the request, the child is terminated
/// (SIGTERM, SIGKILL after the grace period) and replaced. A request written
/// but not started yet does not disturb the child's current work: the child
/// takes no new calls and is terminated when it gets to that request.
///
/// # At most once
///
/// A call runs at most once unless it allows retries. When its child ends
/// without answering it (a crash, or termination for *another* call's
/// cancellation), a call the child had not acknowledged starting is sent to
/// another child (it never ran); one that had started fails (`WorkerDied`, or
/// `Interrupted` when the child was terminated for another call), unless it
/// has retries left ([`Call::retries`], default
/// [`ProcessPoolBuilder::retries`](super::ProcessPoolBuilder::retries)).
///
/// # Panics
///
/// Polling it again after it returned `Ready` panics.
#[must_use = "a call does nothing unless awaited, and dropping it cancels it"]
pub struct Call {
    pool: Arc<PoolShared>,
    cell: Arc<CallCell>,
    request: Arc<Vec<u8>>,
    context: Option<Context>,
    /// The child a targeted call must run on.
    target: Option<Arc<Conn>>,
    /// Key in the pool's waiter list (unique per call).
    key: u64,
    stage: Stage,
    /// How long the call may take from its first poll ([`Call::timeout`]).
    timeout: Option<Duration>,
    /// The timer of `timeout`, armed by the first poll.
    deadline: Option<Sleep>,
}

enum Stage {
    /// Fails at once with this error (request too large, ...).
    Failed(ProcessError),
    Dispatch,
    Waiting,
    Done,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("request_len", &self.request.len())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Call {
    pub(crate) fn new(
        pool: Arc<PoolShared>,
        request: Vec<u8>,
        context: Option<Context>,
        target: Option<Arc<Conn>>,
    ) -> Call {
        crate::telemetry::process().spawned();
        let max = pool.max_message_size();
        let stage = if !pool.is_owner() {
            // A `fork()` copy of the pool's process: see `PoolShared::owner`.
            Stage::Failed(ProcessError::pool_closed())
        } else if request.len() > max {
            Stage::Failed(ProcessError::too_large(request.len(), max))
        } else {
            Stage::Dispatch
        };
        Call {
            key: pool.next_id(),
            cell: CallCell::new(target.is_some(), pool.retries()),
            timeout: pool.call_timeout(),
            deadline: None,
            pool,
            request: Arc::new(request),
            context,
            target,
            stage,
        }
    }

    /// Lets the call be sent again up to `retries` times after an attempt that
    /// had started was lost because its child died or was terminated for
    /// another call's cancellation: the request must then tolerate running
    /// more than once (or in part, then again). Default: the pool's
    /// [`ProcessPoolBuilder::retries`](super::ProcessPoolBuilder::retries).
    /// Attempts that never started are sent again without counting.
    pub fn retries(self, retries: u32) -> Call {
        lock(&self.cell.inner).retries = retries;
        self
    }

    /// Gives the call `timeout` to resolve, counted from its first poll (time
    /// spent waiting for a child included). When it passes, the call resolves
    /// to a `TimedOut` error and is given up like a dropped call: a frame still
    /// queued is withdrawn, and the child that has the request is terminated
    /// and replaced (at once if it started it, else when it gets to it). The
    /// pool's other calls are unaffected, and one that was in flight on that
    /// child follows the "At most once" rule. Default: the pool's
    /// [`ProcessPoolBuilder::call_timeout`](super::ProcessPoolBuilder::call_timeout).
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// A handle that cancels this call from anywhere (another task or thread).
    /// The call then resolves to a `Cancelled` error.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            pool: self.pool.clone(),
            cell: self.cell.clone(),
        }
    }

    /// One dispatch attempt: `Ready(Ok)` when the call is in flight.
    fn dispatch(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), ProcessError>> {
        loop {
            let conn = match &self.target {
                Some(conn) => conn.clone(),
                None => match self.pool.pick(self.key, cx.waker()) {
                    Dispatch::Conn(conn) => conn,
                    Dispatch::Wait => return Poll::Pending,
                    Dispatch::Fail(err) => return Poll::Ready(Err(err)),
                },
            };
            let id = self.pool.next_id();
            {
                let mut inner = lock(&self.cell.inner);
                if inner.cancelled {
                    return Poll::Ready(Err(ProcessError::cancelled()));
                }
                inner.running = Some((conn.clone(), id));
            }
            let registered = conn.register(id, &self.cell, self.pool.max_tasks_per_child());
            if registered == Registered::YesRetired {
                self.pool.replace(conn.slot, conn.id);
            }
            let sent = registered != Registered::No
                && conn.submit(
                    id,
                    &self.request,
                    self.context
                        .as_ref()
                        .map(|context| (context.inner.id, &context.inner.payload)),
                    &self.pool,
                );
            if !sent {
                conn.unregister(id);
                lock(&self.cell.inner).running = None;
                if self.target.is_some() {
                    return Poll::Ready(Err(ProcessError::worker_died(
                        conn.pid(),
                        conn.proc.reaped().flatten(),
                        Arc::from(Vec::new()),
                    )));
                }
                continue;
            }
            // A cancel that ran between setting `running` and registering found
            // nothing to withdraw: do it now (withdrawing twice is harmless).
            if lock(&self.cell.inner).cancelled {
                conn.abandon(id, &self.pool);
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl Future for Call {
    type Output = Result<Vec<u8>, ProcessError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(self.get_mut().poll_stages(cx));
        let counts = crate::telemetry::process();
        match &result {
            Ok(_) => counts.finished(true),
            Err(err) if err.is_cancelled() => counts.cancelled(1),
            Err(_) => counts.finished(false),
        }
        Poll::Ready(result)
    }
}

impl Call {
    /// Arms the timeout on the first poll; once it passed, gives the call up
    /// (step 4 of the module docs). Returns the result when the call ends here.
    fn poll_timeout(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<Vec<u8>, ProcessError>> {
        let after = self.timeout?;
        if !matches!(self.stage, Stage::Dispatch | Stage::Waiting) {
            return None;
        }
        let timer = self.deadline.get_or_insert_with(|| {
            let _enter = self.pool.reactor().enter();
            vedart_reactor::sleep(after)
        });
        if timer.poll_unpin(cx).is_pending() {
            return None;
        }
        self.deadline = None;
        self.timeout = None;
        self.pool.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
        if matches!(self.stage, Stage::Dispatch) {
            self.pool.forget_waiter(self.key);
            self.stage = Stage::Done;
            return Some(Err(ProcessError::timed_out(after, None)));
        }
        let running = {
            let mut inner = lock(&self.cell.inner);
            if matches!(inner.outcome, Some(Outcome::Done(_))) {
                // It resolved first: that result stands.
                return None;
            }
            let running = inner.running.take();
            let pid = running.as_ref().map(|(conn, _)| conn.pid());
            inner.cancelled = true;
            inner.outcome = Some(Outcome::Done(Err(ProcessError::timed_out(after, pid))));
            running
        };
        if let Some((conn, id)) = running {
            conn.abandon(id, &self.pool);
        }
        None
    }

    /// The body of `poll`: runs the stages until the call resolves or waits.
    fn poll_stages(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<Vec<u8>, ProcessError>> {
        if let Some(result) = self.poll_timeout(cx) {
            return Poll::Ready(result);
        }
        let this = self;
        loop {
            match &this.stage {
                Stage::Failed(err) => {
                    let err = err.clone();
                    this.stage = Stage::Done;
                    this.pool.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Err(err));
                }
                Stage::Dispatch => match this.dispatch(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => this.stage = Stage::Waiting,
                    Poll::Ready(Err(err)) => {
                        this.stage = Stage::Done;
                        this.pool.forget_waiter(this.key);
                        if !err.is_cancelled() {
                            this.pool.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        return Poll::Ready(Err(err));
                    }
                },
                Stage::Waiting => {
                    let mut inner = lock(&this.cell.inner);
                    match inner.outcome.take() {
                        Some(Outcome::Done(result)) => {
                            drop(inner);
                            this.stage = Stage::Done;
                            return Poll::Ready(result);
                        }
                        Some(Outcome::Retry) => {
                            inner.running = None;
                            drop(inner);
                            this.stage = Stage::Dispatch;
                        }
                        None => {
                            match &inner.waker {
                                Some(waker) if waker.will_wake(cx.waker()) => {}
                                _ => inner.waker = Some(cx.waker().clone()),
                            }
                            return Poll::Pending;
                        }
                    }
                }
                Stage::Done => panic!("`Call` polled after it completed"),
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !matches!(self.stage, Stage::Done) {
            // Dropped before it resolved.
            crate::telemetry::process().cancelled(1);
        }
        match self.stage {
            Stage::Dispatch => self.pool.forget_waiter(self.key),
            Stage::Waiting => {
                let running = lock(&self.cell.inner).running.take();
                if let Some((conn, id)) = running {
                    conn.abandon(id, &self.pool);
                }
            }
            Stage::Failed(_) | Stage::Done => {}
        }
    }
}

/// Cancels one [`Call`] from anywhere; see [`Call::cancel_handle`].
#[derive(Clone)]
pub struct CancelHandle {
    pool: Arc<PoolShared>,
    cell: Arc<CallCell>,
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle").finish_non_exhaustive()
    }
}

impl CancelHandle {
    /// Cancels the call: it resolves to a `Cancelled` error, and its child is
    /// terminated and replaced if the call's frame was already written. Does
    /// nothing if the call already resolved.
    pub fn cancel(&self) {
        let (running, waker) = {
            let mut inner = lock(&self.cell.inner);
            if inner.outcome.is_some() || inner.cancelled {
                return;
            }
            inner.cancelled = true;
            inner.outcome = Some(Outcome::Done(Err(ProcessError::cancelled())));
            (inner.running.take(), inner.waker.take())
        };
        if let Some((conn, id)) = running {
            conn.abandon(id, &self.pool);
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Bytes installed once in each child that runs a call made with them, such as
/// a pickled function that many calls use. Created by
/// [`ProcessPool::context`](super::ProcessPool::context).
///
/// The pool guarantees that before a call made with
/// [`ProcessPool::call_with`](super::ProcessPool::call_with) is written to a
/// child, that child was sent the context's `Control`/`Install` frame, once. A
/// child started later (a replacement) gets it before its first such call.
/// When the last clone of the context is dropped, children that have it get a
/// `Control`/`Release` frame. The request payload must tell the child which
/// context to use (for example by starting with [`Context::id`]).
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pool: Arc<PoolShared>,
    id: u64,
    payload: Arc<Vec<u8>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.inner.id)
            .field("len", &self.inner.payload.len())
            .finish()
    }
}

impl Context {
    pub(crate) fn new(pool: Arc<PoolShared>, id: u64, payload: Vec<u8>) -> Context {
        Context {
            inner: Arc::new(ContextInner {
                pool,
                id,
                payload: Arc::new(payload),
            }),
        }
    }

    /// The id the child sees in the install frame's id field.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The installed bytes.
    pub fn payload(&self) -> &[u8] {
        &self.inner.payload
    }

    pub(crate) fn belongs_to(&self, pool: &Arc<PoolShared>) -> bool {
        Arc::ptr_eq(&self.inner.pool, pool)
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        for conn in self.pool.conns() {
            conn.release_context(self.id);
        }
    }
}

/// One child's answer to a broadcast; see
/// [`ProcessPool::broadcast`](super::ProcessPool::broadcast).
#[derive(Debug)]
pub struct WorkerReply {
    /// The child that answered.
    pub pid: u32,
    /// Its answer.
    pub result: Result<Vec<u8>, ProcessError>,
}

/// The future of [`ProcessPool::broadcast`](super::ProcessPool::broadcast).
#[must_use = "a broadcast does nothing unless awaited"]
pub struct Broadcast {
    calls: Vec<Targeted>,
}

/// One child's part of a broadcast: its pid, its call until it resolves, then
/// its answer.
type Targeted = (u32, Option<Call>, Option<Result<Vec<u8>, ProcessError>>);

impl fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broadcast")
            .field("children", &self.calls.len())
            .finish()
    }
}

impl Broadcast {
    pub(crate) fn new(calls: Vec<(u32, Call)>) -> Broadcast {
        Broadcast {
            calls: calls
                .into_iter()
                .map(|(pid, call)| (pid, Some(call), None))
                .collect(),
        }
    }
}

impl Future for Broadcast {
    type Output = Vec<WorkerReply>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Vec<WorkerReply>> {
        let this = self.get_mut();
        let mut pending = false;
        for (_, call, result) in &mut this.calls {
            if let Some(running) = call {
                match Pin::new(running).poll(cx) {
                    Poll::Ready(answer) => {
                        *result = Some(answer);
                        *call = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        Poll::Ready(
            this.calls
                .drain(..)
                .map(|(pid, _, result)| WorkerReply {
                    pid,
                    result: result.unwrap_or_else(|| Err(ProcessError::cancelled())),
                })
                .collect(),
        )
    }
}
