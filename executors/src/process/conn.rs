//! One pool child: its shared state ([`Conn`]) and the future that drives its
//! pipes (`ConnDriver`).
//!
//! # Who does what
//!
//! - A call registers itself in [`Conn::register`] and writes its frame with
//!   [`Conn::submit`], directly from the caller's task: when nothing is queued
//!   ahead of it, the frame goes out in one `writev` without waking anybody.
//!   Whatever the pipe does not take is queued for the driver.
//! - The `ConnDriver`, one task per child, reads stdout (decoding answers and
//!   completing calls), reads stderr into a ring of the last lines (so the child
//!   never blocks on a full stderr pipe), flushes queued frames when stdin has
//!   room, escalates termination (SIGTERM, then SIGKILL after the grace period)
//!   and watches for the child's exit.
//!
//! # Life of a child
//!
//! 1. `Live`: accepts calls. After `max_tasks_per_child` requests, or when a
//!    call it has not started yet is cancelled (see "At most once"), it turns
//!    `Retiring` (the slot starts a replacement at once).
//! 2. `Retiring`: no new calls; when the last call is answered the driver
//!    closes stdin (a worker exits on EOF), sends SIGTERM after the grace period
//!    and SIGKILL after another.
//! 3. `Terminating`: a call that the child had acknowledged starting was
//!    cancelled, the child broke the protocol, or the pool was dropped. The
//!    child got SIGTERM (or SIGKILL for a protocol error); SIGKILL follows after
//!    the grace period.
//! 4. `Dead`: the exit was seen (pidfd, or EOF on stdout then `waitpid`); the
//!    driver drains what the child left in its pipes, reaps it, settles the
//!    calls still in flight and tells the pool, which starts a replacement.
//!
//! # At most once
//!
//! A worker acknowledges each request with a `Started` frame before it begins
//! it, so the parent knows which requests may have run. When a child ends with
//! calls in flight (targeted calls aside, which fail):
//!
//! - a call it never acknowledged is sent to another child: it never ran. (If
//!   the child acknowledged and answered nothing at all, which is how a program
//!   that cannot start looks, its calls fail instead, so that they do not
//!   circle through crashing children forever.)
//! - a call it acknowledged is sent again only if the call has retries left;
//!   otherwise it fails with `WorkerDied`, or with `Interrupted` when the child
//!   was terminated for another call's cancellation.
//!
//! A call cancelled after its frame was written but before the child
//! acknowledged it does not terminate the child at once: the child is retired
//! (no new calls; the slot starts a replacement) and is terminated when it
//! acknowledges that request, after finishing the calls ahead of it. So
//! cancelling one call never interrupts another call that is running.
//!
//! Lock order: pool state, then [`Conn`]'s `state`, then its `writer`; a call
//! cell's lock is innermost and never held while taking another.

use crate::sync::unmodelled::Arc;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io;
use std::time::Instant;

use futures::task::AtomicWaker;
use vedart_reactor::Async;

use super::call::{CallCell, Outcome};
use super::driver::ConnDriver;
use super::error::ProcessError;
use super::exit::ExitWatcher;
use super::frame::ControlOp;
use super::pool::PoolShared;
use super::sys::{ChildParts, ProcHandle, RawChild};
use super::writer::{OutFrame, Writer, flush_queue};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Mutex, lock};

/// Why a child is being terminated.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// A call that the child had started was cancelled.
    Cancelled,
    /// The child broke the protocol; its calls already failed with this error.
    Protocol(ProcessError),
    /// The pool was dropped; its calls already failed with `PoolClosed`.
    Closed,
    /// Writing to the child's stdin failed.
    WriteFailed,
}

#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Live,
    Retiring,
    Terminating(End),
    Dead,
}

/// The state of one child that calls and the driver share.
pub(crate) struct Conn {
    /// Unique within the pool: tells a slot's current child from its predecessor.
    pub(crate) id: u64,
    /// Index of the pool slot this child fills.
    pub(crate) slot: usize,
    pub(crate) proc: Arc<ProcHandle>,
    /// Mirrors `phase == Live`, readable without the lock by the dispatcher.
    accepting: AtomicBool,
    /// Calls registered and not yet answered (the dispatcher picks the least).
    pub(crate) in_flight: AtomicUsize,
    /// Requests registered over the child's life (for `max_tasks_per_child`).
    pub(crate) tasks_sent: AtomicU64,
    /// Calls answered (response or error frame).
    pub(crate) completed: AtomicU64,
    pub(crate) started: Instant,
    state: Mutex<ConnState>,
    pub(crate) writer: Mutex<Writer>,
    /// The driver task, woken when frames are queued or the phase changes.
    pub(crate) driver_waker: AtomicWaker,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("slot", &self.slot)
            .field("pid", &self.proc.pid())
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

struct ConnState {
    phase: Phase,
    /// Calls in flight by request id.
    calls: HashMap<u64, InFlight>,
    /// Requests whose call was cancelled after their frame was written but
    /// before the child acknowledged them: the child is terminated if it does.
    abandoned: HashSet<u64>,
    /// `Started` frames received.
    acknowledged: u64,
}

/// A call in flight on this child.
struct InFlight {
    cell: Arc<CallCell>,
    /// The child acknowledged starting it (`Started` frame).
    started: bool,
}

/// A call still in flight on a child that ended, as [`Conn::mark_dead`] hands
/// it over.
pub(crate) struct Unfinished {
    pub(crate) cell: Arc<CallCell>,
    /// The child had acknowledged starting it.
    pub(crate) started: bool,
}

/// What a `Started` frame means; see [`Conn::mark_started`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ack {
    /// A call in flight is now running.
    Running,
    /// The request of a cancelled call: terminate the child.
    Abandoned,
    /// Nothing to do (a terminated child's late frame).
    Ignored,
    /// A protocol error, described.
    Violation(String),
}

/// What an answer frame refers to; see [`Conn::take_call`].
pub(crate) enum Answered {
    /// The call to complete.
    Call(Arc<CallCell>),
    /// Nothing to do (a terminated child's late answer).
    Ignored,
    /// A protocol error, described.
    Violation(String),
}

/// What [`Conn::register`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Registered {
    /// The call is in flight on this child.
    Yes,
    /// Yes, and it was the child's last task: the slot needs a replacement.
    YesRetired,
    /// The child no longer accepts calls; dispatch elsewhere.
    No,
}

impl Conn {
    /// Wraps a freshly started child; returns the shared state and its driver.
    pub(crate) fn new(
        raw: RawChild,
        id: u64,
        slot: usize,
        pool: &Arc<PoolShared>,
    ) -> io::Result<(Arc<Conn>, ConnDriver)> {
        let reactor = pool.reactor();
        let Some(ChildParts {
            proc,
            stdin,
            stdin_keepalive,
            stdout,
            stderr,
        }) = raw.into_parts()
        else {
            return Err(io::Error::other("the child was already handed out"));
        };
        let registered = Async::with_reactor(stdin, reactor).and_then(|stdin| {
            Ok((
                stdin,
                Async::with_reactor(stdout, reactor)?,
                Async::with_reactor(stderr, reactor)?,
            ))
        });
        let (stdin, stdout, stderr) = match registered {
            Ok(pipes) => pipes,
            Err(err) => {
                proc.signal(libc::SIGKILL);
                proc.reap_blocking();
                return Err(err);
            }
        };
        let exit = ExitWatcher::new(proc.clone(), reactor);
        let conn = Arc::new(Conn {
            id,
            slot,
            proc,
            accepting: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            tasks_sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            started: Instant::now(),
            state: Mutex::new(ConnState {
                phase: Phase::Live,
                calls: HashMap::new(),
                abandoned: HashSet::new(),
                acknowledged: 0,
            }),
            writer: Mutex::new(Writer {
                stdin: Some(stdin),
                queue: VecDeque::new(),
                installed: Default::default(),
            }),
            driver_waker: AtomicWaker::new(),
        });
        let driver = ConnDriver::new(
            pool.clone(),
            conn.clone(),
            stdout,
            stderr,
            stdin_keepalive,
            exit,
        );
        Ok((conn, driver))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Whether the dispatcher may send new calls here.
    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// The current phase, for statistics.
    pub(crate) fn phase(&self) -> Phase {
        lock(&self.state).phase.clone()
    }

    /// Registers a call before its frame is written, so that its answer cannot
    /// arrive unannounced.
    pub(crate) fn register(
        &self,
        id: u64,
        cell: &Arc<CallCell>,
        max_tasks: Option<u64>,
    ) -> Registered {
        let mut state = lock(&self.state);
        if !matches!(state.phase, Phase::Live) {
            return Registered::No;
        }
        state.calls.insert(
            id,
            InFlight {
                cell: cell.clone(),
                started: false,
            },
        );
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let sent = self.tasks_sent.fetch_add(1, Ordering::Relaxed) + 1;
        if max_tasks.is_some_and(|max| sent >= max) {
            state.phase = Phase::Retiring;
            self.accepting.store(false, Ordering::Release);
            drop(state);
            self.driver_waker.wake();
            return Registered::YesRetired;
        }
        Registered::Yes
    }

    /// Writes a registered call's frame (after the context's install frame, the
    /// first time this child sees that context). Returns `false` if the child's
    /// stdin is already closed; the caller then unregisters and re-dispatches.
    pub(crate) fn submit(
        &self,
        id: u64,
        request: &Arc<Vec<u8>>,
        context: Option<(u64, &Arc<Vec<u8>>)>,
        pool: &PoolShared,
    ) -> bool {
        let mut writer = lock(&self.writer);
        let Writer {
            stdin,
            queue,
            installed,
        } = &mut *writer;
        let Some(stdin) = stdin else {
            return false;
        };
        let was_empty = queue.is_empty();
        if let Some((context_id, payload)) = context {
            if !installed.contains(&context_id) {
                // Size was checked when the context was created.
                if let Ok(frame) = OutFrame::control(
                    context_id,
                    ControlOp::Install,
                    Some(payload),
                    pool.max_frame_size(),
                ) {
                    installed.insert(context_id);
                    queue.push_back(frame);
                }
            }
        }
        match OutFrame::request(id, request, pool.max_frame_size()) {
            Ok(frame) => queue.push_back(frame),
            // Size was checked when the call was created.
            Err(_) => return false,
        }
        if was_empty {
            // Fast path: nothing ahead of us, write now. `WouldBlock` (pipe full)
            // or any error leaves the rest to the driver.
            let _ = flush_queue(stdin.get_ref(), queue, &pool.stats.bytes_sent);
        }
        if !queue.is_empty() {
            drop(writer);
            self.driver_waker.wake();
        }
        true
    }

    /// Queues a context release, if this child has the context.
    pub(crate) fn release_context(&self, context_id: u64) {
        let mut writer = lock(&self.writer);
        if writer.stdin.is_none() || !writer.installed.remove(&context_id) {
            return;
        }
        // One byte of payload: one frame whatever the maximum.
        if let Ok(frame) = OutFrame::control(context_id, ControlOp::Release, None, usize::MAX) {
            writer.queue.push_back(frame);
            drop(writer);
            self.driver_waker.wake();
        }
    }

    /// Removes a call that will never be answered through the normal path.
    pub(crate) fn unregister(&self, id: u64) {
        let mut state = lock(&self.state);
        if state.calls.remove(&id).is_some() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Gives up on a call whose future was dropped or cancelled. If its frame
    /// never left the queue it is simply withdrawn; if the child acknowledged
    /// starting it, the child is terminated; otherwise the child is retired and
    /// terminated when it acknowledges it (see the module docs).
    pub(crate) fn abandon(&self, id: u64, pool: &Arc<PoolShared>) {
        let mut state = lock(&self.state);
        let Some(entry) = state.calls.remove(&id) else {
            return;
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        {
            let mut writer = lock(&self.writer);
            if let Some(at) = writer
                .queue
                .iter()
                .position(|frame| frame.request == id && frame.written == 0)
            {
                writer.queue.remove(at);
                drop(writer);
                drop(state);
                // Retiring children wait for their last call: this may be it.
                self.driver_waker.wake();
                return;
            }
        }
        if !entry.started {
            let retire = match state.phase {
                Phase::Live => true,
                Phase::Retiring => false,
                // Already on its way out: nothing more to do.
                Phase::Terminating(_) | Phase::Dead => return,
            };
            state.abandoned.insert(id);
            if retire {
                state.phase = Phase::Retiring;
                self.accepting.store(false, Ordering::Release);
            }
            drop(state);
            self.driver_waker.wake();
            if retire {
                pool.replace(self.slot, self.id);
            }
            return;
        }
        let calls = self.begin_termination(&mut state, End::Cancelled);
        drop(state);
        debug_assert!(calls.is_empty());
        self.after_termination(pool, libc::SIGTERM);
    }

    /// Records the child's `Started` frame for request `id`.
    pub(crate) fn mark_started(&self, id: u64) -> Ack {
        let mut state = lock(&self.state);
        state.acknowledged += 1;
        let in_good_standing = matches!(state.phase, Phase::Live | Phase::Retiring);
        if let Some(entry) = state.calls.get_mut(&id) {
            if entry.started && in_good_standing {
                return Ack::Violation(format!("a second Started frame for request id {id}"));
            }
            entry.started = true;
            return Ack::Running;
        }
        if state.abandoned.remove(&id) {
            return if in_good_standing {
                Ack::Abandoned
            } else {
                Ack::Ignored
            };
        }
        if in_good_standing {
            Ack::Violation(format!(
                "a Started frame for request id {id}, which is not in flight"
            ))
        } else {
            Ack::Ignored
        }
    }

    /// Terminates the child: no new calls, a signal now, SIGKILL after the grace
    /// period. For `Protocol` and `Closed` the calls in flight fail at once with
    /// the matching error; for the others they wait for the child's end.
    pub(crate) fn terminate(&self, pool: &Arc<PoolShared>, end: End, signal: libc::c_int) {
        let failure = match &end {
            End::Protocol(err) => Some(err.clone()),
            End::Closed => Some(ProcessError::pool_closed()),
            End::Cancelled | End::WriteFailed => None,
        };
        let mut state = lock(&self.state);
        let calls = self.begin_termination(&mut state, end);
        drop(state);
        if let Some(err) = failure {
            pool.stats
                .calls_failed
                .fetch_add(calls.len() as u64, Ordering::Relaxed);
            for cell in calls {
                cell.complete(Outcome::Done(Err(err.clone())));
            }
        }
        self.after_termination(pool, signal);
    }

    /// Moves to `Terminating` (unless already there or dead). Returns the calls
    /// to fail now: all of them for `Protocol` and `Closed`, none otherwise.
    fn begin_termination(&self, state: &mut ConnState, end: End) -> Vec<Arc<CallCell>> {
        if matches!(state.phase, Phase::Terminating(_) | Phase::Dead) {
            return Vec::new();
        }
        let fail_now = matches!(end, End::Protocol(_) | End::Closed);
        state.phase = Phase::Terminating(end);
        self.accepting.store(false, Ordering::Release);
        if fail_now {
            let calls: Vec<_> = state.calls.drain().map(|(_, entry)| entry.cell).collect();
            self.in_flight.fetch_sub(calls.len(), Ordering::Relaxed);
            calls
        } else {
            Vec::new()
        }
    }

    fn after_termination(&self, pool: &Arc<PoolShared>, signal: libc::c_int) {
        self.proc.signal(signal);
        self.driver_waker.wake();
        pool.replace(self.slot, self.id);
    }

    /// Stops dispatching here and lets the child finish its calls and exit
    /// (graceful pool shutdown).
    pub(crate) fn retire(&self) {
        let mut state = lock(&self.state);
        if matches!(state.phase, Phase::Live) {
            state.phase = Phase::Retiring;
            self.accepting.store(false, Ordering::Release);
        }
        drop(state);
        self.driver_waker.wake();
    }

    /// Closes the child's stdin (a worker exits on EOF).
    pub(crate) fn close_stdin(&self) {
        let stdin = lock(&self.writer).stdin.take();
        drop(stdin);
    }

    /// Takes the call answered by a frame with this id.
    pub(crate) fn take_call(&self, id: u64) -> Answered {
        let mut state = lock(&self.state);
        // An unknown id is a protocol error only while the child is in good
        // standing; a terminated child's late answers are simply dropped.
        let in_good_standing = matches!(state.phase, Phase::Live | Phase::Retiring);
        match state.calls.get(&id) {
            None if in_good_standing => {
                return Answered::Violation(format!(
                    "answer to request id {id}, which is not in flight"
                ));
            }
            None => return Answered::Ignored,
            Some(entry) if !entry.started && in_good_standing => {
                return Answered::Violation(format!(
                    "answer to request id {id} without a Started frame before it"
                ));
            }
            Some(_) => {}
        }
        let Some(entry) = state.calls.remove(&id) else {
            return Answered::Ignored;
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
        Answered::Call(entry.cell)
    }

    /// Whether a retiring child has nothing left to do.
    pub(crate) fn is_drained(&self) -> bool {
        let state = lock(&self.state);
        if !matches!(state.phase, Phase::Retiring) || !state.calls.is_empty() {
            return false;
        }
        lock(&self.writer).queue.is_empty()
    }

    /// Marks the child dead; returns its last phase, the calls still in
    /// flight, and whether it ever acknowledged or answered a request.
    pub(crate) fn mark_dead(&self) -> (Phase, Vec<Unfinished>, bool) {
        let mut state = lock(&self.state);
        let phase = std::mem::replace(&mut state.phase, Phase::Dead);
        self.accepting.store(false, Ordering::Release);
        let calls: Vec<_> = state
            .calls
            .drain()
            .map(|(_, entry)| Unfinished {
                cell: entry.cell,
                started: entry.started,
            })
            .collect();
        state.abandoned.clear();
        let progressed = state.acknowledged > 0 || self.completed.load(Ordering::Relaxed) > 0;
        self.in_flight.fetch_sub(calls.len(), Ordering::Relaxed);
        drop(state);
        lock(&self.writer).stdin = None;
        (phase, calls, progressed)
    }
}
